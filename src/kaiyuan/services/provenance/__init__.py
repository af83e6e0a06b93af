"""Reading model files for provenance: weight formats, parsed without loading tensors."""
