"""The bottom layer: errors, the Protocol base, the Task interface, runtime settings."""
