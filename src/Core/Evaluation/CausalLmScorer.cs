using LoraPS.Generation;
using LoraPS.Models;
using LoraPS.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Evaluation;

/// <summary>How <see cref="CausalLmScorer"/> batches and encodes.</summary>
public sealed record ScorerOptions
{
    /// <summary>Sequences per forward pass.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>The longest sequence the model sees; null = the model's <c>max_position_embeddings</c>. Longer
    /// inputs are left-truncated, as lm-eval does, and counted in <see cref="CausalLmScorer.TruncatedRequests"/>.</summary>
    public int? MaxLength { get; init; }

    /// <summary>Encode with the tokenizer's special tokens (BOS for Llama), as current lm-eval's
    /// <c>add_bos_token=None</c> does. False matches lm-eval 0.4.x, which added none for causal models.</summary>
    public bool AddSpecialTokens { get; init; } = true;

    /// <summary>Called with the number of requests (or generations) finished so far in the current call.</summary>
    public IProgress<int>? Progress { get; init; }
}

/// <summary>
/// Scores requests with a causal LM exactly as lm-eval's HFLM does: the context/continuation token split of
/// <c>_encode_pair</c>, the prefix token for an empty context, input = <c>(ctx+cont)[-(max_len+1):][:-1]</c>, the
/// summed log-softmax over the continuation positions and <c>is_greedy</c>. Requests are sorted longest first,
/// right-padded into batches, and a request whose model input equals or begins another's is read from that row
/// (MMLU's " A".." D" after one question: one forward pass), a superset of lm-eval's logits cache.
/// </summary>
public sealed class CausalLmScorer : ILanguageModelScorer
{
    // Requests are scored in chunks of this many batches, in request order, so that cancelling leaves a prefix.
    const int BatchesPerChunk = 8;

    readonly TransformerModel model;
    readonly TextTokenizer tokenizer;
    readonly ScorerOptions options;

    public CausalLmScorer(TransformerModel model, TextTokenizer tokenizer, ScorerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (model.HeadKind != ModelHeadKind.CausalLM)
            throw new InvalidOperationException($"Log-likelihood scoring needs a causal language model; this {model.Config.ModelType} model has a {model.HeadKind} head.");
        this.model = model;
        this.tokenizer = tokenizer;
        this.options = options ?? new ScorerOptions();
        if (this.options.BatchSize < 1) throw new ArgumentException($"BatchSize must be at least 1; got {this.options.BatchSize}.", nameof(options));
        MaxLength = this.options.MaxLength ?? (model.Config.MaxPositionEmbeddings > 0 ? model.Config.MaxPositionEmbeddings : 2048);
        PrefixTokenId = tokenizer.BosTokenId ?? (tokenizer.EosTokenIds.Count > 0 ? tokenizer.EosTokenIds[0]
            : throw new InvalidOperationException("The tokenizer has neither a BOS nor an EOS token to stand for an empty context."));
    }

    public int MaxLength { get; }

    /// <summary>lm-eval's <c>prefix_token_id</c>: BOS, else EOS.</summary>
    public int PrefixTokenId { get; }

    /// <summary>Requests whose context was left-truncated to fit <see cref="MaxLength"/>.</summary>
    public int TruncatedRequests { get; private set; }

    /// <summary>Token positions run through the model (padding excluded), for throughput figures.</summary>
    public long TokensProcessed { get; private set; }

    /// <summary>Forward rows run; fewer than requests when identical inputs were shared.</summary>
    public long ForwardRows { get; private set; }

    /// <summary>Starts the counters again (per task).</summary>
    public void ResetCounters() { TruncatedRequests = 0; TokensProcessed = 0; ForwardRows = 0; }

    IReadOnlyList<int> Encode(string text, bool? special = null) => tokenizer.Encode(text, special ?? options.AddSpecialTokens);

    /// <summary>lm-eval's split of a request into context and continuation tokens.</summary>
    public (int[] Context, int[] Continuation) EncodePair(string context, string continuation)
    {
        if (context.Length == 0)
        {
            var cont = Encode(continuation, special: false).ToArray();
            return cont.Length > 0 && cont[0] == PrefixTokenId ? (cont[..1], cont[1..]) : (new[] { PrefixTokenId }, cont);
        }
        // Trailing whitespace of the context belongs to the continuation: "Answer: " + "A" is scored as "Answer:" + " A".
        int spaces = context.Length - context.TrimEnd().Length;
        if (spaces > 0)
        {
            continuation = context[^spaces..] + continuation;
            context = context[..^spaces];
        }
        var whole = Encode(context + continuation);
        var ctx = Encode(context);
        return (whole.Take(ctx.Count).ToArray(), whole.Skip(ctx.Count).ToArray());
    }

    public IReadOnlyList<LoglikelihoodResult> Loglikelihood(IReadOnlyList<LoglikelihoodRequest> requests, CancellationToken cancellationToken = default)
    {
        var encoded = requests.Select(r => EncodePair(r.Context, r.Continuation)).ToList();
        return ScoreTokens(encoded, cancellationToken);
    }

    /// <summary>Scores already-encoded (context, continuation) pairs; the engine behind every request type.</summary>
    public IReadOnlyList<LoglikelihoodResult> ScoreTokens(IReadOnlyList<(int[] Context, int[] Continuation)> requests, CancellationToken cancellationToken = default)
    {
        var results = new List<LoglikelihoodResult>(requests.Count);
        int chunk = options.BatchSize * BatchesPerChunk;
        using var noGrad = no_grad();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            for (int start = 0; start < requests.Count; start += chunk)
            {
                if (cancellationToken.IsCancellationRequested) break;
                int count = Math.Min(chunk, requests.Count - start);
                results.AddRange(ScoreChunk(requests, start, count));
                options.Progress?.Report(results.Count);
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return results;
    }

    sealed class Row(long[] input)
    {
        public long[] Input { get; } = input;
        /// <summary>Each request read from this row: its index, continuation, and the length of its own input.</summary>
        public List<(int Index, int[] Continuation, int InputLength)> Requests { get; } = new();
    }

    LoglikelihoodResult[] ScoreChunk(IReadOnlyList<(int[] Context, int[] Continuation)> requests, int start, int count)
    {
        var results = new LoglikelihoodResult[count];
        var rows = new Dictionary<string, Row>(StringComparer.Ordinal);
        for (int i = 0; i < count; i++)
        {
            var (context, continuation) = requests[start + i];
            if (continuation.Length == 0) { results[i] = new LoglikelihoodResult(0, true, 0); continue; }
            if (continuation.Length > MaxLength)
                throw new ArgumentException($"A continuation of {continuation.Length} tokens does not fit the model's context of {MaxLength} tokens.");
            var whole = context.Concat(continuation).Select(t => (long)t).ToArray();
            if (whole.Length > MaxLength + 1) TruncatedRequests++;
            var input = whole[Math.Max(0, whole.Length - (MaxLength + 1))..^1];
            var key = string.Join(',', input);
            if (!rows.TryGetValue(key, out var row)) rows[key] = row = new Row(input);
            row.Requests.Add((i, continuation, input.Length));
        }
        // Longest first, as lm-eval's Collator: padding stays small and an out-of-memory shows up in the first batch.
        var ordered = rows.Values.OrderByDescending(r => r.Input.Length).ToList();
        ordered = MergePrefixes(ordered);
        for (int b = 0; b < ordered.Count; b += options.BatchSize)
            ScoreBatch(ordered.GetRange(b, Math.Min(options.BatchSize, ordered.Count - b)), results);
        return results;
    }

    /// <summary>
    /// A causal model's logits at a position depend only on the tokens up to it, so a row whose input is a prefix of a
    /// longer row's input is read from the longer row: the choices of a question share one forward pass even when
    /// their continuations differ in length (lm-eval shares only identical inputs). Rows come longest first.
    /// </summary>
    static List<Row> MergePrefixes(List<Row> rows)
    {
        var kept = new List<Row>();
        foreach (var row in rows)
        {
            var host = kept.FirstOrDefault(k => IsPrefix(row.Input, k.Input));
            if (host is null) kept.Add(row);
            else host.Requests.AddRange(row.Requests);
        }
        return kept;
    }

    static bool IsPrefix(long[] prefix, long[] of)
    {
        if (prefix.Length > of.Length) return false;
        for (int i = 0; i < prefix.Length; i++) if (prefix[i] != of[i]) return false;
        return true;
    }

    void ScoreBatch(List<Row> batch, LoglikelihoodResult[] results)
    {
        using var scope = NewDisposeScope();
        int width = batch.Max(r => r.Input.Length);
        var ids = new long[batch.Count * width];    // right padding with id 0: a causal model never looks right
        for (int b = 0; b < batch.Count; b++) Array.Copy(batch[b].Input, 0, ids, b * width, batch[b].Input.Length);
        using var output = model.Forward(tensor(ids, new long[] { batch.Count, width }));
        var logits = output.Logits!;
        for (int b = 0; b < batch.Count; b++)
        {
            var row = batch[b];
            // Logits at position p predict token p+1: a request with input length L and n continuation tokens reads L−n .. L−1.
            int first = row.Requests.Min(r => r.InputLength - r.Continuation.Length);
            int end = row.Requests.Max(r => r.InputLength);
            var logProbs = logits[b, first..end].to(ScalarType.Float32).log_softmax(-1);
            long vocab = logProbs.shape[1];
            var values = logProbs.data<float>().ToArray();
            var argmax = logProbs.argmax(-1).data<long>().ToArray();
            foreach (var (index, continuation, inputLength) in row.Requests)
            {
                double sum = 0;
                bool greedy = true;
                int offset = inputLength - continuation.Length - first;
                for (int k = 0; k < continuation.Length; k++)
                {
                    sum += values[(offset + k) * vocab + continuation[k]];
                    greedy &= argmax[offset + k] == continuation[k];
                }
                results[index] = new LoglikelihoodResult(sum, greedy, continuation.Length);
            }
            TokensProcessed += row.Input.Length;
        }
        ForwardRows += batch.Count;
    }

    public IReadOnlyList<RollingLoglikelihood> LoglikelihoodRolling(IReadOnlyList<string> texts, CancellationToken cancellationToken = default)
    {
        var results = new List<RollingLoglikelihood>(texts.Count);
        foreach (var text in texts)
        {
            if (cancellationToken.IsCancellationRequested) break;
            var tokens = Encode(text, special: false).ToArray();
            var windows = RollingWindows(tokens, PrefixTokenId, MaxLength);
            var scored = ScoreTokens(windows, cancellationToken);
            if (scored.Count < windows.Count) break;
            results.Add(new RollingLoglikelihood(scored.Sum(s => s.LogLikelihood), tokens.Length));
        }
        return results;
    }

    /// <summary>
    /// lm-eval's <c>get_rolling_token_windows</c> with <c>context_len=1</c> followed by <c>make_disjoint_window</c>:
    /// every token is predicted exactly once, each window conditioned on as many preceding tokens as fit.
    /// </summary>
    public static List<(int[] Context, int[] Continuation)> RollingWindows(int[] tokens, int prefixToken, int maxLength)
    {
        var windows = new List<(int[], int[])>();
        if (tokens.Length == 0) return windows;
        int first = Math.Min(maxLength, tokens.Length);
        windows.Add((new[] { prefixToken }, tokens[..first]));
        int predicted = first;
        while (predicted < tokens.Length)
        {
            int length = Math.Min(tokens.Length - predicted, maxLength);
            int end = predicted + length;
            // The window's input is tokens[end-maxLength-1 .. end-1); the part before the predicted tokens is context.
            int contextStart = Math.Max(0, end - maxLength - 1);
            windows.Add((tokens[contextStart..predicted], tokens[predicted..end]));
            predicted = end;
        }
        return windows;
    }

    public IReadOnlyList<string> GenerateUntil(IReadOnlyList<GenerateUntilRequest> requests, CancellationToken cancellationToken = default)
    {
        var results = new List<string>(requests.Count);
        var stopIds = tokenizer.EosTokenIds.Concat(model.Config.EosTokenIds).Select(i => (long)i).ToHashSet();
        foreach (var request in requests)
        {
            if (cancellationToken.IsCancellationRequested) break;
            var ids = Encode(request.Context).Select(i => (long)i).ToList();
            // lm-eval leaves room for the generation by left-truncating the context to max_length − max_gen_toks.
            int room = Math.Max(1, MaxLength - request.MaxGenTokens);
            if (ids.Count > room) { ids = ids.GetRange(ids.Count - room, room); TruncatedRequests++; }
            int budget = Math.Min(request.MaxGenTokens, MaxLength - ids.Count);
            string text = "";
            var (tokens, reason) = TextGenerator.GenerateTokens(model, ids, budget, new SamplingOptions(), stopIds,
                cancellationToken: cancellationToken,
                stopAfter: generated => FirstStop(text = tokenizer.Decode(generated.Select(t => (int)t)), request.Until) >= 0);
            if (reason == FinishReason.Cancelled) break;
            text = tokenizer.Decode(tokens.Select(t => (int)t));
            int cut = FirstStop(text, request.Until);
            results.Add(cut >= 0 ? text[..cut] : text);
            TokensProcessed += ids.Count + tokens.Count;
            options.Progress?.Report(results.Count);
        }
        return results;
    }

    static int FirstStop(string text, IReadOnlyList<string> stops)
    {
        int best = -1;
        foreach (var s in stops)
        {
            if (string.IsNullOrEmpty(s)) continue;
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best)) best = i;
        }
        return best;
    }
}
