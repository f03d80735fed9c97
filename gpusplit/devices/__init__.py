"""What hardware there is: knows nothing of models."""
