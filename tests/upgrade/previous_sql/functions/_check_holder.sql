CREATE OR REPLACE FUNCTION pgjobs._check_holder(p_noun text, p_id bigint, p_worker text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The arguments of every fenced verb (heartbeat, complete, fail, release,
-- their item and export-part forms, an import's batches): the id a claim
-- returned (p_noun: 'job' or 'item') and the worker identity it returned.
-- A NULL id, or a NULL or empty name (pgjobs._check_claim_args refuses it
-- at the claim, so no lease carries it), is the caller's bug: 22023 with a
-- hint. Answered false, as a lost lease is, it sent a worker away from a
-- job it held, or let a client's unset variable pass for "not mine".
-- Callers ask only once their fence found nothing: the path of a held
-- lease pays nothing for it. Locks nothing.
BEGIN
    IF p_id IS NULL THEN
        RAISE EXCEPTION '% id must not be null', p_noun USING ERRCODE = '22023',
            HINT = format('Pass the %s id the claim returned.', p_noun);
    END IF;
    IF p_worker IS NULL OR p_worker = '' THEN
        RAISE EXCEPTION 'worker name must not be empty' USING ERRCODE = '22023',
            HINT = 'Pass the worker column of the row the claim returned (p_worker#token).';
    END IF;
END
$$;
