"""The developer stack: what starts processes for a developer (embedded servers, the launcher)."""
