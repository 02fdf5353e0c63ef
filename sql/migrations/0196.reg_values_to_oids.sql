-- pgjobs 0196: what 0195 left. A backfill queued before this release stored
-- its set value of an oid-alias column (regclass, regtype, ..., a domain
-- over one, an array of them) by its name, in jobs.assignments
-- ("v" = 'public.ka'::regclass), and each page read the name again: a
-- rename between the upgrade and a page set another object's oid, and the
-- job succeeded. And 0195 rewrote only literals of the pg_catalog types
-- themselves: a delete of a release before stop 65 on a key of a domain
-- over one (survivors.key_type 'public.reg_dom', the predicate's
-- '{public.ka}'::public.reg_dom[]) kept its names. This rewrites both, in
-- the unfinished jobs (queued, running, paused), once, reading each name as
-- it reads now: in assignments and predicate, a literal followed by
-- ::<type> (an unquoted, at most schema-qualified name, pgjobs' own
-- format_type text; [] for an array) whose type is, through domains and an
-- array's element, an oid-alias type of pg_catalog, and which holds a name
-- (not only digits), becomes the literal of its oid(s); survivors.exclude,
-- when its key_type is such a type, the same oids. A job whose text the
-- tokens do not cut whole, or whose names no longer name an object, is left
-- as it is (its next page reads the name, as before). No other job is
-- written. Calls no pgjobs function (a migration never does).
-- depends: 0195.reg_names_to_oids

DO $migration$
DECLARE
    v_job record;
    v_field text;
    v_text text;
    v_tokens text[];
    v_out text;
    v_whole text;
    v_token text;
    v_type_text text;
    v_type regtype;
    v_base oid;
    v_array boolean;
    v_value text;
    v_oid text;
    v_key_base oid;
    v_exclude jsonb;
    v_new jsonb;
    i integer;
    v_alias constant text[] := ARRAY['regclass', 'regcollation', 'regconfig', 'regdictionary',
                                     'regnamespace', 'regoper', 'regoperator', 'regproc',
                                     'regprocedure', 'regrole', 'regtype'];
BEGIN
    FOR v_job IN
        SELECT j.id, j.predicate, j.assignments, j.survivors FROM pgjobs.jobs j
         WHERE j.status IN ('queued', 'running', 'paused')
           AND (j.assignments IS NOT NULL OR j.survivors ? 'key_type')
           FOR UPDATE
    LOOP
        BEGIN
            FOREACH v_field IN ARRAY ARRAY['assignments', 'predicate'] LOOP
                v_text := CASE v_field WHEN 'assignments' THEN v_job.assignments
                                       ELSE v_job.predicate END;
                CONTINUE WHEN v_text IS NULL;
                -- Tokens: a quoted identifier, a literal, or a run of neither.
                v_tokens := ARRAY(SELECT m[1] FROM regexp_matches(
                                      v_text, '("(?:[^"]|"")*"|''(?:[^'']|'''')*''|[^''"]+)',
                                      'g') m);
                v_out := '';
                v_whole := '';
                FOR i IN 1 .. coalesce(array_length(v_tokens, 1), 0) LOOP
                    v_token := v_tokens[i];
                    v_whole := v_whole || v_token;
                    v_type_text := substring(coalesce(v_tokens[i + 1], '') FROM
                        '^::([A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?(?:\[\])?)'
                        '(?![A-Za-z0-9_$.("\[])');
                    IF left(v_token, 1) = '''' AND v_type_text IS NOT NULL
                       AND right(v_tokens[i - 1], 1) IS DISTINCT FROM 'E' THEN
                        v_type := pg_catalog.to_regtype(v_type_text);
                        v_array := right(v_type_text, 2) = '[]';
                        -- The type through domains (an array's element through them).
                        v_base := (SELECT CASE WHEN v_array THEN t.typelem ELSE t.oid END
                                     FROM pg_catalog.pg_type t WHERE t.oid = v_type);
                        WHILE (SELECT t.typtype = 'd' FROM pg_catalog.pg_type t
                                WHERE t.oid = v_base) LOOP
                            v_base := (SELECT t.typbasetype FROM pg_catalog.pg_type t
                                        WHERE t.oid = v_base);
                        END LOOP;
                        v_value := replace(substr(v_token, 2, length(v_token) - 2), '''''', '''');
                        IF v_base IN (SELECT t.oid FROM pg_catalog.pg_type t
                                       WHERE t.typnamespace = 'pg_catalog'::regnamespace
                                         AND t.typname = ANY (v_alias))
                           AND v_value ~ '[^0-9{},]' THEN
                            -- (the literal, read by its type's input, as oids)
                            EXECUTE format('SELECT (%L::%s)::pg_catalog.%s::pg_catalog.text',
                                           v_value, v_type, CASE WHEN v_array THEN 'oid[]'
                                                                 ELSE 'oid' END)
                               INTO v_oid;
                            v_token := quote_literal(v_oid);
                        END IF;
                    END IF;
                    v_out := v_out || v_token;
                END LOOP;
                IF v_whole = v_text AND v_out <> v_text THEN
                    IF v_field = 'assignments' THEN
                        UPDATE pgjobs.jobs SET assignments = v_out WHERE id = v_job.id;
                    ELSE
                        UPDATE pgjobs.jobs SET predicate = v_out WHERE id = v_job.id;
                    END IF;
                END IF;
            END LOOP;
            -- The stored exclude list of a key of such a type, as oids.
            v_exclude := v_job.survivors -> 'exclude';
            v_key_base := pg_catalog.to_regtype(v_job.survivors ->> 'key_type');
            WHILE (SELECT t.typtype = 'd' FROM pg_catalog.pg_type t WHERE t.oid = v_key_base) LOOP
                v_key_base := (SELECT t.typbasetype FROM pg_catalog.pg_type t
                                WHERE t.oid = v_key_base);
            END LOOP;
            IF jsonb_typeof(v_exclude) = 'array'
               AND v_key_base IN (SELECT t.oid FROM pg_catalog.pg_type t
                                   WHERE t.typnamespace = 'pg_catalog'::regnamespace
                                     AND t.typname = ANY (v_alias))
               AND EXISTS (SELECT FROM jsonb_array_elements_text(v_exclude) e
                            WHERE e !~ '^[0-9]+$') THEN
                EXECUTE format('SELECT jsonb_agg((%s)::pg_catalog.oid::pg_catalog.text '
                               'ORDER BY o) FROM jsonb_array_elements_text($1) '
                               'WITH ORDINALITY u(e, o)',
                               CASE WHEN v_key_base = 'pg_catalog.regclass'::regtype
                                    THEN 'pg_catalog.regclassin(e::pg_catalog.cstring)'
                                    ELSE format('e::%s', v_key_base::regtype) END)
                   INTO v_new USING v_exclude;
                UPDATE pgjobs.jobs SET survivors = jsonb_set(survivors, '{exclude}', v_new)
                 WHERE id = v_job.id;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            -- A name of no object now: the job keeps what it stored.
            NULL;
        END;
    END LOOP;
END
$migration$;
