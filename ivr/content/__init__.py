"""Loading and validating what an editor may change: faq/, prompts/, config/, and where they live."""
