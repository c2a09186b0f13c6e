"""Administration: versioned policies, client keys, and the authenticated admin API over them."""
