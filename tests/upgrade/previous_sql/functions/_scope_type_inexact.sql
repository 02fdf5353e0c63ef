CREATE OR REPLACE FUNCTION pgjobs._scope_type_inexact(p_type regtype)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Why a scope column of type p_type (a domain judged by its base type)
-- cannot name a tenant by its text, or NULL when it can. A scope is
-- canonicalised by reading its text through the type's input and printing
-- it back (pgjobs._canonical_scope), and jobs store that text; that needs
-- an input that reads a value exactly or refuses it with a data exception,
-- and an output that names the same value tomorrow. Not so for:
--   the oid-alias types (pgjobs._oid_alias_type: regclass, regtype, ...): their
--   input looks the name up in the catalog (a name of no object raises
--   42P01 / 42704 / 42883, a bad one 42601 / 42602, never class 22) and
--   their output prints the name: after a rename the text a job stored
--   names another object, and so another tenant;
--   xid8: its input reads any text as some number ('zzz' is 0, '1 2' is 1);
--   "char": its input keeps the first byte ('acme' is 'a').
-- The one rule: pgjobs._registration_problem refuses such a scope column
-- (at register_target and at every use of the target), and
-- pgjobs._canonical_scope refuses every scope of one registered before
-- (22023), so no entry point reads its text. Locks nothing.
DECLARE
    v_base regtype := pgjobs._base_type(p_type);
BEGIN
    IF pgjobs._oid_alias_type(v_base) THEN
        RETURN format('its text is a name looked up in the catalog (%s), which a rename gives '
                      'to another object', format_type(v_base, NULL));
    ELSIF v_base = 'xid8'::regtype THEN
        RETURN 'its input reads any text as some number (''zzz'' is 0)';
    ELSIF v_base = '"char"'::regtype THEN
        RETURN 'its input keeps the first byte of a text (''acme'' is ''a'')';
    END IF;
    RETURN NULL;
END
$$;
