"""The mirror itself: plan what a repository lacks, then copy it in a crash-safe order."""
