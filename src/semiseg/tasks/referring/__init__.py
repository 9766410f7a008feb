"""Referring expression segmentation: a sentence picks one object."""
