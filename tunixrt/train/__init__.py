"""Training: the pure step, the loop, throughput metrics and progress display."""
