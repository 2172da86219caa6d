//! SQL front end for Moldau. Filled in by the SQL issue.
