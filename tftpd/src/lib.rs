//! TFTP boot server (placeholder until issue #4).
