"""The real Chroma server of the HttpClient half of the contract tests is tests/conftest.py's
`chroma_server`."""
