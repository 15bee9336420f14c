"""Settings (defaults, the environment, the page's saved provider settings) and job inputs."""
