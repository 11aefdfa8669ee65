"""Running modeltuid on several hosts: coordination and moving version files between them."""
