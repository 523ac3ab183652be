using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Generation;

/// <summary>Chooses next tokens from logits according to <see cref="SamplingOptions"/>.</summary>
public sealed class TokenSampler : IDisposable
{
    readonly SamplingOptions options;
    readonly Generator? generator;

    public TokenSampler(SamplingOptions options)
    {
        options.Validate();
        this.options = options;
        if (!options.IsGreedy)
            generator = options.Seed is { } seed ? new Generator((ulong)seed) : new Generator((ulong)Random.Shared.NextInt64());
    }

    /// <summary>Next token id for each row of <paramref name="logits"/> ([batch, vocab]).</summary>
    public long[] Next(Tensor logits)
    {
        using var scope = NewDisposeScope();
        var scores = logits.to_type(ScalarType.Float32);
        if (options.IsGreedy)
            return scores.argmax(-1).data<long>().ToArray();

        scores = scores / options.Temperature;
        if (options.TopK > 0 && options.TopK < scores.shape[^1])
        {
            // Everything below the k-th largest logit is removed (ties with the k-th survive, as in HF).
            var kth = scores.topk(options.TopK, dim: -1).values[.., ^1..];
            scores = scores.masked_fill(scores < kth, float.NegativeInfinity);
        }
        if (options.TopP < 1.0)
        {
            var (sorted, order) = scores.sort(dim: -1, descending: true);
            var cumulative = sorted.softmax(-1).cumsum(-1);
            // Drop a token when the mass of the tokens strictly more likely than it already reaches top_p;
            // the most likely token always stays.
            var drop = (cumulative - sorted.softmax(-1)) >= options.TopP;
            var dropInVocabOrder = zeros_like(drop).scatter(-1, order, drop);
            scores = scores.masked_fill(dropInVocabOrder, float.NegativeInfinity);
        }
        var probabilities = scores.softmax(-1);
        return multinomial(probabilities, 1, replacement: false, generator: generator).squeeze(-1).data<long>().ToArray();
    }

    public void Dispose() => generator?.Dispose();
}
