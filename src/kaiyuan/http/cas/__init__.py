"""The Xet CAS API (spec version 1.1) served under `/cas`: what `hf_xet` talks to."""
