// implemented by the GGUF reader work
