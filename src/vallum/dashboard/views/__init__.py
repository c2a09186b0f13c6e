"""One module per dashboard page: each reads the admin services and renders its template."""
