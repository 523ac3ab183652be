using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Adapters;

/// <summary>
/// LoRA-GA's A (r, in) and B (out, r) from one layer's estimated gradient G (out, in), spec notes §2: the official
/// <c>lora_ga_init</c> (orthonormal singular vectors, A and B both scaled) or PEFT's variant (B carries the singular
/// values, stable scale on B only).
/// </summary>
/// <remarks>
/// Why it works: after one SGD step of size λ, ΔW_lora ≈ −λ·(B·Bᵀ·G + G·Aᵀ·A). With A = V_{0:r}ᵀ and B = U_{r:2r}
/// that is the best rank-2r approximation of the full-weight step, so the first LoRA step points where full
/// fine-tuning's would. The two halves must be disjoint, and a sign flip of any singular vector changes nothing.
/// </remarks>
public static class LoraGaFactors
{
    /// <summary>A and B for one layer, in float32 (Official) or the weight's dtype (Peft); the weight is not changed.</summary>
    /// <param name="gradient">The mean gradient dL/dW, (out, in).</param>
    /// <param name="weight">The base weight, (out, in); read only for the WeightS scale.</param>
    /// <param name="rank">r; 2r singular triplets are used, so 2r ≤ min(out, in).</param>
    /// <param name="scaling">The adapter's scaling s (α/r, or α/√r under rsLoRA).</param>
    /// <param name="options">Direction, scale, γ, variant and SVD settings.</param>
    /// <param name="generator">Random source of the randomized SVD and the Random direction.</param>
    public static (Tensor A, Tensor B) Compute(Tensor gradient, Tensor weight, int rank, double scaling, LoraGaOptions options, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(gradient);
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(options);
        long m = gradient.shape[0], n = gradient.shape[1];
        if (2L * rank > Math.Min(m, n))
            throw new ArgumentException($"LoRA-GA takes 2r = {2 * rank} singular vectors of each gradient, but a {m}x{n} layer has only {Math.Min(m, n)}; use r <= {Math.Min(m, n) / 2} for it (rank_pattern) or leave it out of TargetModules.");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var (u, s, vh) = Decompose(gradient.to(ScalarType.Float32), 2 * rank, Math.Min(4L * rank, Math.Min(m, n)), options.SvdIterations, generator);
        var (a, b) = FromSingularVectors(u, s, vh, weight, rank, scaling, options, generator);
        return (a.MoveToOuterDisposeScope(), b.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The leading singular triplets of G: U (m, k), S (k), Vh (k, n) with k ≥ <paramref name="keep"/>. Randomized as
    /// torch's <c>svd_lowrank(G, q, niter)</c> in float32 (the official code), or exact in float64 with a fixed sign
    /// convention (the largest |entry| of each U column is positive), so the result does not depend on LAPACK's signs.
    /// </summary>
    internal static (Tensor U, Tensor S, Tensor Vh) Decompose(Tensor gradient, long keep, long q, int? niter, Generator? generator)
    {
        if (niter is { } iterations)
        {
            var (u, s, v) = RandomizedSvd.LowRank(gradient, q, iterations, generator);
            return (u, s, v.t());
        }
        var (ue, se, vhe) = linalg.svd(gradient.to(ScalarType.Float64), fullMatrices: false);
        ue = ue[.., ..(int)keep];
        vhe = vhe[..(int)keep];
        var rows = arange(keep, device: ue.device);
        var signs = ue.abs().argmax(0);
        var sign = ue[signs, rows].sign();
        sign = where(sign.eq(0), ones_like(sign), sign);
        return ((ue * sign).to(ScalarType.Float32), se[..(int)keep].to(ScalarType.Float32), (vhe * sign.unsqueeze(1)).to(ScalarType.Float32));
    }

    /// <summary>Steps 3 and 4 of the algorithm: pick A and B from U (m, ≥2r), S, Vh (≥2r, n), then scale them.</summary>
    internal static (Tensor A, Tensor B) FromSingularVectors(Tensor u, Tensor s, Tensor vh, Tensor weight, int r, double scaling, LoraGaOptions options, Generator? generator)
    {
        bool peft = options.Variant == LoraGaVariant.Peft;
        var (indexA, indexB) = Indices(r, options.Direction, peft, generator, u.device);
        var a = vh.index_select(0, indexA);
        var b = u.index_select(1, indexB);
        var sB = s.index_select(0, indexB);
        if (peft) b = b.matmul(diag(sB));

        long m = u.shape[0];
        double stable = Math.Pow(m, 0.25);
        double gammaRoot = Math.Sqrt(options.StableGamma);
        switch (options.Scale)
        {
            case LoraGaScale.Stable:
                // The official code evaluates B * m**0.25 / gamma**0.5 left to right; PEFT scales B only.
                b = b * stable / gammaRoot;
                if (!peft) a = a * stable / gammaRoot;
                break;
            case LoraGaScale.GD:
                a = a / scaling;
                b = b / scaling;
                break;
            case LoraGaScale.Unit:
                break;
            case LoraGaScale.WeightS:
            {
                var w = weight.to(ScalarType.Float32);
                var sW = options.SvdIterations is { } k
                    ? RandomizedSvd.LowRank(w, Math.Min(4L * r, Math.Min(w.shape[0], w.shape[1])), k, generator).S
                    : linalg.svdvals(w);
                if (peft)
                {
                    b = b * (sW[0] / sB[0]);
                }
                else
                {
                    var mean = (sW[..r] / scaling).sqrt().mean();
                    a = a * mean;
                    b = b * mean;
                }
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(options), options.Scale, "Unknown LoRA-GA scale.");
        }
        // Official: A, B stay float32 (its dtype "fp32"). PEFT casts them to the base weight's dtype.
        var dtype = peft ? weight.dtype : ScalarType.Float32;
        return (a.contiguous().to(dtype), b.contiguous().to(dtype));
    }

    static (Tensor A, Tensor B) Indices(int r, LoraGaDirection direction, bool peft, Generator? generator, Device device)
    {
        long[] Range(long start, long stop, long step = 1)
        {
            var list = new List<long>();
            for (long i = start; i < stop; i += step) list.Add(i);
            return [.. list];
        }
        (long[] A, long[] B) picked = direction switch
        {
            LoraGaDirection.ArB2r => (Range(0, r), Range(r, 2 * r)),
            LoraGaDirection.A2rBr => (Range(r, 2 * r), Range(0, r)),
            LoraGaDirection.ArBr => (Range(1, 2 * r, 2), Range(0, 2 * r, 2)),
            LoraGaDirection.Random => RandomSplit(r, peft, generator),
            _ => throw new ArgumentOutOfRangeException(nameof(direction), direction, "Unknown LoRA-GA direction."),
        };
        return (tensor(picked.A, device: device), tensor(picked.B, device: device));
    }

    /// <summary>
    /// Official: a random permutation of 0..2r−1, the first r for A, the rest for B. PEFT: the same r random indices
    /// for both (its <c>randperm(2r)[:r]</c>).
    /// </summary>
    static (long[] A, long[] B) RandomSplit(int r, bool peft, Generator? generator)
    {
        var perm = randperm(2L * r, generator: generator).data<long>().ToArray();
        return peft ? (perm[..r], perm[..r]) : (perm[..r], perm[r..]);
    }
}
