// implemented by the tokenizer work
