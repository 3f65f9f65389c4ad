"""Console dialogs."""
