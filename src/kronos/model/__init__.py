"""The networks: configs, the quantiser, tokenizer and Transformer, the published checkpoint layout,
precision and where a model comes from. Imports nothing from the data layer and no pandas."""
