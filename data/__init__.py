"""Project data (TCGA label tables and splits, the paper's published numbers); see README.md."""
