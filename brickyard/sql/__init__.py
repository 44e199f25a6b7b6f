"""AI functions in SQL: the embedded DuckDB warehouse (`connect`) and Spark (`brickyard.sql.spark`)."""
