"""Deterministic code only: the journey interpreter and the run/cohort workflows.

Workflows never import the store or the provider SDKs; they reach them through activities
named in activities.contracts.
"""
