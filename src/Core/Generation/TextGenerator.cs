using System.Diagnostics;
using LoraPS.Models;
using LoraPS.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Generation;

/// <summary>What to generate: a prompt, a length limit, how to pick tokens.</summary>
public sealed record GenerationRequest
{
    /// <summary>The text to continue. Empty = start from the tokenizer's BOS token alone.</summary>
    public string Prompt { get; init; } = "";
    public int MaxNewTokens { get; init; } = 128;
    public SamplingOptions Sampling { get; init; } = new();
    /// <summary>Feed only the new token each step and reuse cached keys/values (the fast path). False recomputes the
    /// whole sequence every step; it exists to measure what the cache saves.</summary>
    public bool UseKvCache { get; init; } = true;
    /// <summary>Stop as soon as the completion contains one of these strings (it is cut before the stop string).</summary>
    public IReadOnlyList<string> StopSequences { get; init; } = Array.Empty<string>();
    /// <summary>Token ids that end generation besides the model's EOS ids (HF's <c>eos_token_id</c> list). llama2.c
    /// models such as stories260K end a story with <c>&lt;s&gt;</c> (id 1) rather than <c>&lt;/s&gt;</c>.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = Array.Empty<int>();
}

/// <summary>Why generation ended.</summary>
public enum FinishReason { EndOfSequence, Length, StopSequence, Cancelled }

/// <summary>One generated completion, with what it cost.</summary>
public sealed record GenerationResult(
    string Prompt,
    string Completion,
    string Text,
    int PromptTokens,
    int GeneratedTokens,
    FinishReason FinishReason,
    TimeSpan Elapsed,
    double TokensPerSecond,
    IReadOnlyList<long> TokenIds);

/// <summary>
/// Autoregressive generation for causal LMs: encode the prompt, run it once (the prefill), then pick one token at a
/// time, feeding only that token back when the KV cache is on. Stops at an EOS token, a stop sequence, the length
/// limit, the model's context length, or cancellation.
/// </summary>
public static class TextGenerator
{
    /// <param name="model">A causal LM.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="request">Prompt, length limit and sampling.</param>
    /// <param name="cancellationToken">Checked before each token; cancelling returns what was generated so far.</param>
    /// <param name="progress">Called after each new token with the number generated so far.</param>
    public static GenerationResult Generate(TransformerModel model, TextTokenizer tokenizer, GenerationRequest request,
        CancellationToken cancellationToken = default, Action<int>? progress = null)
    {
        if (model.HeadKind != ModelHeadKind.CausalLM)
            throw new InvalidOperationException($"Generation needs a causal language model; this {model.Config.ModelType} model has a {model.HeadKind} head.");
        if (request.MaxNewTokens < 0)
            throw new ArgumentException($"MaxNewTokens must be 0 or more; got {request.MaxNewTokens}.", nameof(request));

        var promptIds = tokenizer.Encode(request.Prompt, addSpecialTokens: true).Select(i => (long)i).ToList();
        if (promptIds.Count == 0)
            throw new ArgumentException("The prompt is empty and the tokenizer adds no BOS token to start from; give a prompt.", nameof(request));
        long contextLength = model.Config.MaxPositionEmbeddings;
        if (contextLength > 0 && promptIds.Count >= contextLength)
            throw new ArgumentException($"The prompt is {promptIds.Count} tokens; the model's context is {contextLength}. Shorten the prompt.", nameof(request));

        int budget = contextLength > 0 ? (int)Math.Min(request.MaxNewTokens, contextLength - promptIds.Count) : request.MaxNewTokens;
        var stopIds = tokenizer.EosTokenIds.Concat(model.Config.EosTokenIds).Concat(request.StopTokenIds).Select(i => (long)i).ToHashSet();
        string completion = "";
        var clock = Stopwatch.StartNew();
        Func<IReadOnlyList<long>, bool>? stopAfter = null;
        if (request.StopSequences.Count > 0)
            stopAfter = ids =>
            {
                completion = tokenizer.Decode(ids.Select(i => (int)i));
                int cut = FirstStop(completion, request.StopSequences);
                if (cut < 0) return false;
                completion = completion[..cut];
                return true;
            };
        var (generated, reason) = GenerateTokens(model, promptIds, budget, request.Sampling, stopIds, request.UseKvCache,
            cancellationToken, progress, stopAfter);
        clock.Stop();
        if (reason != FinishReason.StopSequence) completion = tokenizer.Decode(generated.Select(i => (int)i));
        var text = reason == FinishReason.StopSequence
            ? tokenizer.Decode(promptIds.Select(i => (int)i)) + completion
            : tokenizer.Decode(promptIds.Concat(generated).Select(i => (int)i));
        double seconds = clock.Elapsed.TotalSeconds;
        return new GenerationResult(request.Prompt, completion, text, promptIds.Count, generated.Count, reason, clock.Elapsed,
            seconds > 0 ? generated.Count / seconds : 0, generated);
    }

    /// <summary>
    /// The token-level loop behind <see cref="Generate"/>: runs the prompt once, then one token per step (only that
    /// token when <paramref name="useKvCache"/>, the whole sequence otherwise) until a stop id, <paramref name="maxNewTokens"/>,
    /// <paramref name="stopAfter"/> returning true, or cancellation. The stop id itself is not returned.
    /// </summary>
    public static (List<long> Tokens, FinishReason Reason) GenerateTokens(TransformerModel model, IReadOnlyList<long> promptIds,
        int maxNewTokens, SamplingOptions sampling, IReadOnlySet<long> stopIds, bool useKvCache = true,
        CancellationToken cancellationToken = default, Action<int>? progress = null, Func<IReadOnlyList<long>, bool>? stopAfter = null)
    {
        var generated = new List<long>();
        var reason = FinishReason.Length;
        using var sampler = new TokenSampler(sampling);
        using var cache = useKvCache ? model.CreateKvCache(promptIds.Count + maxNewTokens) : null;
        using var noGrad = no_grad();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            IReadOnlyList<long> step = promptIds;   // what the next forward pass sees
            while (generated.Count < maxNewTokens)
            {
                if (cancellationToken.IsCancellationRequested) { reason = FinishReason.Cancelled; break; }
                long next;
                using (var scope = NewDisposeScope())
                {
                    var input = tensor(step.ToArray(), dtype: ScalarType.Int64).unsqueeze(0);
                    var output = model.Forward(input, cache: cache);
                    next = sampler.Next(output.Logits![.., -1, ..])[0];
                }
                if (stopIds.Contains(next)) { reason = FinishReason.EndOfSequence; break; }
                generated.Add(next);
                progress?.Invoke(generated.Count);
                if (stopAfter is not null && stopAfter(generated)) { reason = FinishReason.StopSequence; break; }
                step = cache is null ? promptIds.Concat(generated).ToList() : new[] { next };
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return (generated, reason);
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
