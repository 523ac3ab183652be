using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Adapters;

/// <summary>
/// The initial A (r, in) and B (out, r) of a new adapter, per PEFT's <c>LoraLayer.update_layer</c>,
/// <c>reset_lora_parameters</c>, <c>pissa_init</c> and <c>olora_init</c>.
/// </summary>
internal static class LoraInitialization
{
    /// <summary>
    /// Builds A and B. For PiSSA and OLoRA the base weight is rewritten in place to the residual W − s·B·A, so
    /// that the layer's output is unchanged at initialisation.
    /// </summary>
    public static (Tensor A, Tensor B) Initialize(Tensor baseWeight, LoraLayerOptions options, Generator? generator, ScalarType dtype)
    {
        long outFeatures = baseWeight.shape[0], inFeatures = baseWeight.shape[1];
        int r = options.Rank;
        var device = baseWeight.device;

        // PEFT creates lora_A = nn.Linear(in, r) and lora_B = nn.Linear(r, out) first: each draws torch's default
        // kaiming_uniform(a=√5). The init below then overwrites them. Drawing the same numbers in the same order
        // keeps a seed meaning what it means in PEFT.
        var a = empty(r, inFeatures, dtype: dtype, device: device).uniform_(-KaimingUniformBound(inFeatures), KaimingUniformBound(inFeatures), generator);
        var b = empty(outFeatures, r, dtype: dtype, device: device).uniform_(-KaimingUniformBound(r), KaimingUniformBound(r), generator);

        switch (options.Init.Kind)
        {
            case LoraInitKind.Default:
                // Microsoft loralib: A ~ kaiming-uniform(a=√5) = U(±1/√in), B = 0, so s·B·A starts at zero.
                a.uniform_(-KaimingUniformBound(inFeatures), KaimingUniformBound(inFeatures), generator);
                b.zero_();
                break;
            case LoraInitKind.Random:
                break; // init_lora_weights=False keeps nn.Linear's defaults: the adapter is not a no-op.
            case LoraInitKind.Gaussian:
                a.normal_(0.0, 1.0 / r, generator);
                b.zero_();
                break;
            case LoraInitKind.PiSSA:
                (a, b) = PiSSA(baseWeight, r, options.Scaling, options.Init.SvdIterations, generator);
                break;
            case LoraInitKind.OLoRA:
                (a, b) = OLoRA(baseWeight, r, options.Scaling);
                break;
            default:
                throw new NotSupportedException($"init_lora_weights '{options.Init}' is not implemented in LoraPS; use Default, Gaussian, PiSSA or OLoRA. Adapters trained that way can still be loaded.");
        }
        return (a.to(dtype), b.to(dtype));
    }

    /// <summary>
    /// torch's <c>kaiming_uniform_(a=√5)</c> bound for the given fan-in, computed as torch does
    /// (gain = √(2/(1+a²)), bound = √3·gain/√fan), which is 1/√fan up to the last bit.
    /// </summary>
    internal static double KaimingUniformBound(long fanIn)
    {
        double slope = Math.Sqrt(5.0);
        double gain = Math.Sqrt(2.0 / (1 + slope * slope));
        double std = gain / Math.Sqrt(fanIn);
        return Math.Sqrt(3.0) * std;
    }

    /// <summary>
    /// PiSSA (Meng et al. 2024): W = V·diag(S)·Uh; with S_r = S[:r]/s, A = diag(√S_r)·Uh[:r] and
    /// B = V[:, :r]·diag(√S_r), so s·B·A is W's rank-r principal part and W keeps the residual.
    /// </summary>
    static (Tensor A, Tensor B) PiSSA(Tensor baseWeight, int r, double scaling, int? niter, Generator? generator)
    {
        RequireFloatWeight(baseWeight, "PiSSA");
        RequireRank(baseWeight, r, "PiSSA");
        using var noGrad = no_grad();
        var w = baseWeight.to(ScalarType.Float32);
        Tensor vr, sr, uhr;
        if (niter is null)
        {
            var (v, s, uh) = linalg.svd(w, fullMatrices: false);
            vr = v[.., ..r];
            sr = s[..r] / scaling;
            uhr = uh[..r];
        }
        else
        {
            var (v, s, u) = RandomizedSvd.LowRank(w, r, niter.Value, generator);
            vr = v;
            sr = s / scaling;
            uhr = u.t();
        }
        var sqrtS = sr.sqrt().diag();
        var a = sqrtS.matmul(uhr);
        var b = vr.matmul(sqrtS);
        WriteResidual(baseWeight, w, a, b, scaling);
        return (a, b);
    }

    /// <summary>OLoRA (Büyükakyüz 2024): W = Q·R; A = R[:r], B = Q[:, :r]; W keeps W − s·B·A.</summary>
    static (Tensor A, Tensor B) OLoRA(Tensor baseWeight, int r, double scaling)
    {
        RequireFloatWeight(baseWeight, "OLoRA");
        RequireRank(baseWeight, r, "OLoRA");
        using var noGrad = no_grad();
        var w = baseWeight.to(ScalarType.Float32);
        var (q, rMatrix) = linalg.qr(w);
        var a = rMatrix[..r].contiguous();
        var b = q[.., ..r].contiguous();
        WriteResidual(baseWeight, w, a, b, scaling);
        return (a, b);
    }

    /// <summary>W ← W − s·B·A in float32, cast back; PEFT evaluates <c>scaling * B @ A</c> left to right.</summary>
    static void WriteResidual(Tensor baseWeight, Tensor w32, Tensor a, Tensor b, double scaling)
    {
        var residual = w32 - (b * scaling).matmul(a);
        baseWeight.copy_(residual.to(baseWeight.dtype));
    }

    static void RequireFloatWeight(Tensor weight, string method)
    {
        if (weight.dtype is not (ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float64))
            throw new NotSupportedException($"{method} initialisation needs a floating-point base weight, got {weight.dtype}; quantized weights cannot be decomposed in place.");
    }

    static void RequireRank(Tensor weight, int r, string method)
    {
        long max = Math.Min(weight.shape[0], weight.shape[1]);
        if (r > max) throw new ArgumentException($"{method} needs r <= min(out, in) = {max}, got r = {r}.");
    }
}

/// <summary>
/// torch's <c>svd_lowrank</c> (Halko, Martinsson &amp; Tropp 2009, Algorithm 5 with power iterations), used by
/// PiSSA's <c>pissa_niter_K</c>: a rank-q SVD from q random projections refined by K subspace iterations.
/// </summary>
internal static class RandomizedSvd
{
    /// <summary>Returns U (m, q), S (q), V (n, q) with A ≈ U·diag(S)·Vᵀ.</summary>
    public static (Tensor U, Tensor S, Tensor V) LowRank(Tensor a, long q, int niter, Generator? generator)
    {
        long m = a.shape[0], n = a.shape[1];
        // Assume A is tall: for a wide matrix decompose Aᵀ and swap U and V at the end.
        bool wide = m < n;
        var tall = wide ? a.mH : a;
        var basis = ApproximateBasis(tall, q, niter, generator);
        var (u, s, vh) = linalg.svd(basis.mH.matmul(tall), fullMatrices: false);
        var v = vh.mH;
        u = basis.matmul(u);
        return wide ? (v, s, u) : (u, s, v);
    }

    /// <summary>torch <c>_lowrank.get_approximate_basis</c>: an orthonormal Q (m, q) with A ≈ Q·Qᴴ·A.</summary>
    static Tensor ApproximateBasis(Tensor a, long q, int niter, Generator? generator)
    {
        var r = randn([a.shape[1], q], dtype: a.dtype, device: a.device, generator: generator);
        var basis = linalg.qr(a.matmul(r)).Q;
        for (int i = 0; i < niter; i++)
        {
            basis = linalg.qr(a.mH.matmul(basis)).Q;
            basis = linalg.qr(a.matmul(basis)).Q;
        }
        return basis;
    }
}
