"""Recipes: the demo and the claims ablations, built from configs/ (budgets, paths and seed change only),
the demo data recipe, and run reports."""
