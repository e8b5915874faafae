"""Vietnamese text: normalisation, FAQ matching, spoken forms. Pure text in, text out."""
