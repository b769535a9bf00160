"""recovery_jax: anticipatory recovery in cyclic fine-tuning, in JAX."""
