CREATE OR REPLACE FUNCTION pgjobs._target(p_target regclass)
RETURNS pgjobs.target_registry
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $function$
-- The registration of p_target, for every function that takes a target.
-- Locks nothing. Raises 22023 when the table is not registered.
DECLARE
    v_reg pgjobs.target_registry;
BEGIN
    IF p_target IS NULL THEN
        RAISE EXCEPTION 'target must not be NULL'
            USING ERRCODE = '22023',
                  HINT = 'Pass a registered table, e.g. ''public.user_table_rows''.';
    END IF;

    SELECT r.* INTO v_reg FROM pgjobs.target_registry r WHERE r.target = p_target;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not registered with pgjobs', p_target
            USING ERRCODE = '22023',
                  HINT = format('SELECT pgjobs.register_target(%L, p_key => ..., p_scope => ..., '
                                'p_created_at => ..., p_document => ...);', p_target::text);
    END IF;
    RETURN v_reg;
END
$function$;
