"""Training methods: the hooks the loop calls, the memory banks, the losses, and each method."""
