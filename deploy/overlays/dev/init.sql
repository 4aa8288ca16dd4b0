-- The dev overlay's databases: one per owner, each reachable only by its own role.
CREATE ROLE coordinator LOGIN;
CREATE ROLE external_institution LOGIN;
CREATE ROLE balance_store LOGIN;
CREATE DATABASE coordinator OWNER coordinator;
CREATE DATABASE external_institution OWNER external_institution;
CREATE DATABASE balance_store OWNER balance_store;
REVOKE CONNECT ON DATABASE coordinator FROM PUBLIC;
REVOKE CONNECT ON DATABASE external_institution FROM PUBLIC;
REVOKE CONNECT ON DATABASE balance_store FROM PUBLIC;
