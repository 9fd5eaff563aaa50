"""Head models (FLAME or the built-in open head), their file loading, skinning and landmarks."""
