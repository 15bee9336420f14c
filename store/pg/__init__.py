"""The PostgreSQL store: the same log and job list as store/, on asyncpg."""
