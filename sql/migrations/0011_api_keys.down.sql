-- Undo 0011: the API keys go (every key made stops working).

DROP TABLE api_keys;
