-- docker-compose.yml: Airflow's metadata DB beside docqa's record store, in one server.
CREATE DATABASE airflow OWNER docqa;
