CREATE OR REPLACE FUNCTION pgjobs._text_is_fixed(p_type regtype)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether a value of p_type prints (::text) the same in every session. A
-- filter's $contains on a column is an ILIKE over `col::text`, and that
-- text is made wherever the SQL runs: in the runner's page (pg_cron's
-- session, a worker's), in pgjobs.visible, pgjobs.preview and
-- pgjobs.visible_count (the caller's session), and in the client's own
-- query around pgjobs.mask. A timestamptz prints in the session's
-- TimeZone and DateStyle, a date or timestamp in its DateStyle, an
-- interval in its IntervalStyle, a float (and the geometric types built on
-- floats) by extra_float_digits, bytea by bytea_output, money by
-- lc_monetary, a reg* OID by search_path: for such a type one job would
-- mask, count and delete different rows in each session (a delete
-- submitted in UTC with {"ts": {"$contains": "2024-01-02"}} was previewed
-- at 7 rows, hid all 10 from a reader in Asia/Tokyo and deleted none when
-- its runner was in America/Los_Angeles). So pgjobs._compile_filter_column_op
-- refuses $contains on a column of a type this is false for.
-- True for text types, booleans, integers, oid, numeric, uuid, network
-- and MAC addresses, bit strings, json, jsonb, pg_lsn and enums; for an
-- array or a range of such a type; false for anything else (composites,
-- extension types: unknown, so refused). A domain is judged by its base
-- type. Locks nothing.
DECLARE
    v_type regtype := pgjobs._base_type(p_type);
    v_t record;
BEGIN
    SELECT t.typtype, t.typcategory, t.typelem, t.typlen,
           (SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid) AS subtype,
           (SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngmultitypid = t.oid) AS multi
      INTO v_t
      FROM pg_catalog.pg_type t WHERE t.oid = v_type;
    IF NOT FOUND THEN
        RETURN false;
    ELSIF v_t.typtype = 'e' THEN
        RETURN true;
    ELSIF v_t.typtype = 'r' THEN
        RETURN pgjobs._text_is_fixed(v_t.subtype);
    ELSIF v_t.typtype = 'm' THEN
        RETURN pgjobs._text_is_fixed(v_t.multi);
    ELSIF v_t.typcategory = 'A' AND v_t.typelem <> 0 AND v_t.typlen = -1 THEN
        RETURN pgjobs._text_is_fixed(v_t.typelem);
    END IF;
    RETURN v_type IN ('text'::regtype, 'character varying'::regtype, 'character'::regtype,
                      'name'::regtype, '"char"'::regtype, 'boolean'::regtype,
                      'smallint'::regtype, 'integer'::regtype, 'bigint'::regtype,
                      'oid'::regtype, 'numeric'::regtype, 'uuid'::regtype, 'inet'::regtype,
                      'cidr'::regtype, 'macaddr'::regtype, 'macaddr8'::regtype,
                      'bit'::regtype, 'bit varying'::regtype, 'json'::regtype,
                      'jsonb'::regtype, 'pg_lsn'::regtype);
END
$$;
