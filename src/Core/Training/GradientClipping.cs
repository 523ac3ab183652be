using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Training;

/// <summary>Gradient norm and clipping over all trainable parameters together (torch's <c>clip_grad_norm_</c>).</summary>
public static class GradientClipping
{
    /// <summary>
    /// The global L2 norm of the gradients, ‖(‖g₁‖, ‖g₂‖, …)‖; with <paramref name="maxNorm"/>, every gradient is then
    /// scaled by <c>min(1, maxNorm/(norm + 1e-6))</c> as torch does. Returns the norm before clipping (what LitGPT and
    /// transformers log), NaN or ∞ when a gradient is not finite. Parameters without a gradient are skipped.
    /// </summary>
    public static double ClipByGlobalNorm(IEnumerable<Parameter> parameters, double? maxNorm = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (maxNorm is <= 0 or double.NaN) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "The maximum gradient norm must be > 0.");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var grads = parameters.Select(p => p.grad).OfType<Tensor>().ToList();
        if (grads.Count == 0) return 0;
        // Per-tensor norms in fp32 (bf16 gradients of module copies included), stacked on the first gradient's device.
        var device = grads[0].device;
        var total = stack(grads.Select(g => g.detach().to(ScalarType.Float32).norm().to(device)).ToArray()).norm();
        if (maxNorm is { } max)
        {
            var coefficient = (max / (total + 1e-6)).clamp_max(1.0);
            foreach (var g in grads) g.mul_(coefficient.to(g.device).to(g.dtype));
        }
        return total.item<float>();
    }
}
