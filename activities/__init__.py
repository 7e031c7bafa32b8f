"""Every side effect the journey workflows ask for: audience paging, delivery, records."""
