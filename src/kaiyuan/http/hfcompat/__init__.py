"""Routes that exist to be wire-compatible with the Hugging Face Hub clients."""
