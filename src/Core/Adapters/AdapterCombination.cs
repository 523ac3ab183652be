using static TorchSharp.torch;

namespace LoraPS.Adapters;

/// <summary>How <see cref="LoraLinear.AddWeightedAdapter"/> combines adapters (PEFT <c>combination_type</c>).</summary>
public enum AdapterCombinationType
{
    /// <summary>
    /// <c>"linear"</c>: A = Σ sign(wᵢsᵢ)·√|wᵢsᵢ|·Aᵢ, B = Σ √|wᵢsᵢ|·Bᵢ. Needs equal ranks. Cheap, but not the exact sum
    /// of the updates: cross terms Bᵢ·Aⱼ appear when several adapters are combined.
    /// </summary>
    Linear,
    /// <summary><c>"cat"</c>: A stacks the rows wᵢsᵢ·Aᵢ, B the columns Bᵢ. Exact: B·A = Σ wᵢsᵢ·Bᵢ·Aᵢ; the rank is the sum of ranks.</summary>
    Cat,
    /// <summary><c>"svd"</c>: ΔW = Σ wᵢ·sᵢ·Bᵢ·Aᵢ, truncated to the target rank by SVD (B = U·S, A = Vh). Best rank-k approximation.</summary>
    Svd,
}

/// <summary>
/// The factor arithmetic of PEFT's <c>add_weighted_adapter</c> (<c>lora/model.py</c>), as fixed upstream: the SVD path
/// applies each adapter's scaling once (PEFT #3111) and the linear path carries negative weights' sign on A (#2918).
/// The combined adapter gets α = r, so its own scaling is 1 — the weights already include each source's s.
/// </summary>
internal static class AdapterCombination
{
    /// <summary>The argument rules shared by the model-level and layer-level weighted combination.</summary>
    public static void CheckArguments(IReadOnlyList<string> adapters, IReadOnlyList<double> weights)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        ArgumentNullException.ThrowIfNull(weights);
        if (adapters.Count == 0) throw new ArgumentException("Give at least one adapter to combine.", nameof(adapters));
        if (adapters.Count != weights.Count) throw new ArgumentException($"{adapters.Count} adapters but {weights.Count} weights; give one weight per adapter.", nameof(weights));
    }

    /// <summary>One source: its factors, scaling and combination weight.</summary>
    public readonly record struct Source(Tensor A, Tensor B, double Scaling, double Weight);

    public static (Tensor A, Tensor B) Linear(IReadOnlyList<Source> sources)
    {
        Tensor? a = null, b = null;
        foreach (var src in sources)
        {
            double ws = src.Weight * src.Scaling;
            double root = Math.Sqrt(Math.Abs(ws));
            var ai = src.A * (Math.Sign(ws) * root);
            var bi = src.B * root;
            a = a is null ? ai : a + ai;
            b = b is null ? bi : b + bi;
        }
        return (a!, b!);
    }

    public static (Tensor A, Tensor B) Cat(IReadOnlyList<Source> sources) =>
        (cat(sources.Select(s => s.A * (s.Weight * s.Scaling)).ToArray(), 0),
         cat(sources.Select(s => s.B).ToArray(), 1));

    /// <param name="sources">The adapters; ΔWᵢ = sᵢ·Bᵢ·Aᵢ.</param>
    /// <param name="rank">Target rank k ≤ min(out, in).</param>
    /// <param name="clamp">Optional quantile q: entries of U·S and Vh are clamped to ±(the q-quantile of all their entries), as PEFT does.</param>
    public static (Tensor A, Tensor B) Svd(IReadOnlyList<Source> sources, int rank, double? clamp)
    {
        Tensor? delta = null;
        foreach (var src in sources)
        {
            var di = src.B.matmul(src.A) * (src.Scaling * src.Weight);
            delta = delta is null ? di : delta + di;
        }
        var (u, s, vh) = linalg.svd(delta!, fullMatrices: false);
        var b = u[.., ..rank].matmul(s[..rank].diag());
        var a = vh[..rank];
        if (clamp is { } q)
        {
            var dist = cat([b.flatten(), a.flatten()], 0);
            double hi = dist.quantile(tensor(q, dtype: dist.dtype), -1, false).to(ScalarType.Float64).item<double>();
            b = b.clamp(-hi, hi);
            a = a.clamp(-hi, hi);
        }
        return (a.contiguous(), b.contiguous());
    }
}
