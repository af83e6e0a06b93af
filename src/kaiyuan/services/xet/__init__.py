"""Xet storage: content-defined chunks packed into xorbs, files as reconstructions of chunk ranges.

The formats follow the Xet protocol specification 1.1 (huggingface.co/docs/xet) so that the stock
`hf_xet` client uploads and downloads against this hub; LFS uploads are chunked the same way here.
"""
