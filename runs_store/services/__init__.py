"""Services: the one call each page and CLI command makes (runs list, run detail, insights,
export). Pages hold no SQL; everything they show comes from here.
"""
