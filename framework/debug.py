"""ember.debug: see what the compiler did (filled in with the runtime)."""
