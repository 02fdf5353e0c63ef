CREATE OR REPLACE FUNCTION pgjobs._import_suspects(
    p_sql text,
    p_target regclass,
    p_list bigint[],
    p_range boolean)
RETURNS bigint[]
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The staged records (their n, in order) among p_list that the database is
-- likely to refuse, found in one read of them without writing a row: for
-- pgjobs.import_batch, once the INSERT of a batch (p_sql, made by
-- pgjobs._import_insert_sql) failed. The statement's SELECT (the values,
-- cast as the INSERT casts them) is evaluated for the records in order,
-- with pg_temp.pgjobs_import_at set to each record's n as it is read: a
-- value that does not cast (or a domain's check, a numeric overflow; any
-- error at a record, such as a CHECK's function raising) fails the read at
-- that record, which is taken, and the read goes on after it.
-- The target's CHECK constraints on the columns written (and NOT NULL of
-- those columns) are evaluated on the values read, without failing: a
-- record whose check is false (or whose value is NULL) is taken too.
-- p_range: p_list is every staged record, in order (read as a range of n);
-- else only the records in p_list are read. A guess only: the caller
-- tries each record returned alone and the records between them as runs,
-- so the database still decides every record (a suspect it accepts goes
-- in; a refusal missed here, such as a duplicate key, a foreign key or a
-- trigger, fails its run, which is then narrowed down as before). A
-- statement this cannot read (another shape than expected) returns what
-- was found so far. Locks nothing; writes nothing but the sequence.
DECLARE
    v_head integer := strpos(p_sql, ' AS t (');
    v_from integer := strpos(p_sql, ' FROM pg_temp.pgjobs_import_stage s');
    v_where integer := strpos(p_sql, ' WHERE ($1 IS NULL OR s.n = ANY ($1))');
    v_cols text;
    v_values text;
    v_split integer;
    v_names text[];
    v_cond text;
    v_probe text;
    v_found bigint[];
    v_out bigint[] := '{}'::bigint[];
    v_lo bigint;
    v_hi bigint;
    v_last bigint;
    v_next bigint;
    v_at bigint;
    v_state text;
BEGIN
    IF v_head = 0 OR v_from <= v_head OR v_where <= v_from OR cardinality(p_list) = 0
       OR pg_catalog.to_regclass('pg_temp.pgjobs_import_at') IS NULL THEN
        RETURN v_out;
    END IF;
    -- 'INSERT INTO target AS t (cols)[ OVERRIDING SYSTEM VALUE] SELECT values
    -- FROM pg_temp.pgjobs_import_stage s[ CROSS JOIN LATERAL ...] WHERE ...'
    v_cols := substr(p_sql, v_head + 7, v_from - v_head - 7);
    v_split := strpos(v_cols, ') SELECT ');
    IF v_split = 0 THEN
        v_split := strpos(v_cols, ') OVERRIDING SYSTEM VALUE SELECT ');
        IF v_split = 0 THEN
            RETURN v_out;
        END IF;
        v_values := substr(v_cols, v_split + length(') OVERRIDING SYSTEM VALUE SELECT '));
    ELSE
        v_values := substr(v_cols, v_split + length(') SELECT '));
    END IF;
    v_cols := left(v_cols, v_split - 1);
    v_names := string_to_array(v_cols, ', ');
    -- False for a record the target's checks refuse (only checks whose
    -- columns are all written: the others read defaults this cannot see).
    SELECT string_agg(q.c, ' OR ') INTO v_cond
      FROM (SELECT format('(%s) IS FALSE', pg_catalog.pg_get_expr(c.conbin, c.conrelid)) AS c
              FROM pg_catalog.pg_constraint c
             WHERE c.conrelid = p_target AND c.contype = 'c'
               AND NOT EXISTS (
                   SELECT FROM unnest(c.conkey) k(attnum)
                     JOIN pg_catalog.pg_attribute a
                       ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                    WHERE format('%I', a.attname) <> ALL (v_names))
            UNION ALL
            SELECT format('p.%I IS NULL', a.attname)
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attnotnull AND format('%I', a.attname) = ANY (v_names)
            UNION ALL
            -- A value cast without the column's length (pgjobs._value_type)
            -- that the length would change: too long a string, a bit
            -- string of another length (the assignment refuses it), or a
            -- domain's check that fails (raises here, at the record).
            SELECT format('p.%1$I IS DISTINCT FROM (p.%1$I)::%2$s', a.attname,
                          pgjobs._column_type(p_target, a.attname))
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped
               AND format('%I', a.attname) = ANY (v_names)
               AND pgjobs._value_type(p_target, a.attname)
                   <> pgjobs._column_type(p_target, a.attname)) q;
    -- (OFFSET 0 and the volatile setval keep the values a subquery of their
    -- own, evaluated in order for each record as it is read; count(p.*)
    -- keeps every value evaluated.)
    v_probe := format(
        'SELECT array_agg(p.pgjobs_n) FILTER (WHERE %s), count(p.*) FROM ('
        'SELECT s.n, pg_catalog.setval(''pg_temp.pgjobs_import_at'', s.n), %s%s '
        'WHERE s.n > $1 AND s.n <= $2%s OFFSET 0) p (pgjobs_n, pgjobs_at, %s)',
        coalesce(v_cond, 'false'), v_values, substr(p_sql, v_from, v_where - v_from),
        CASE WHEN p_range THEN '' ELSE ' AND s.n = ANY ($3)' END, v_cols);
    v_lo := p_list[1] - 1;
    v_last := p_list[cardinality(p_list)];
    v_hi := v_last;
    LOOP
        BEGIN
            EXECUTE v_probe INTO v_found USING v_lo, v_hi, p_list;
            v_out := v_out || coalesce(v_found, '{}'::bigint[]);
            EXIT WHEN v_next IS NULL;
            -- (The records before a failed one were read again for their
            -- checks: now those after it.)
            v_lo := v_next;
            v_hi := v_last;
            v_next := NULL;
        -- Any error at a record, not only a refusal: a CHECK whose function
        -- raises (P0001) on a record the database refuses for an earlier
        -- reason (NOT NULL comes before the CHECKs, which this evaluates all
        -- of) failed the read and the job, where the database rejects that
        -- record (h78). The record is a suspect: the database decides it
        -- alone, raising there what it raises. (A statement of another
        -- shape, 42: below, no suspects.)
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE;
            IF left(v_state, 2) = '42' THEN
                RAISE;
            END IF;
            v_at := pg_catalog.pg_sequence_last_value(
                pg_catalog.to_regclass('pg_temp.pgjobs_import_at'));
            -- Not at a record of this read: the statement is not what was
            -- expected; stop with what was found.
            EXIT WHEN v_at IS NULL OR v_at <= v_lo OR v_at > v_hi OR v_next IS NOT NULL;
            v_out := v_out || v_at;
            IF v_cond IS NOT NULL AND v_at - 1 > v_lo THEN
                -- The checks of the records before it were lost with the
                -- failed statement: those records once more, then on.
                v_next := v_at;
                v_hi := v_at - 1;
            ELSE
                v_lo := v_at;
            END IF;
        END;
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT o.n FROM unnest(v_out) o(n) ORDER BY o.n);
EXCEPTION WHEN syntax_error_or_access_rule_violation THEN
    -- (A statement of another shape than expected: no suspects.)
    RETURN '{}'::bigint[];
END
$$;
