using TorchSharp;
using TorchSharp.Utils;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>Llama's RMSNorm: <c>weight · (x / √(mean(x²) + ε))</c>.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")]
    private Parameter _weight;

    public RmsNorm(long size, double eps, Device? device = null, ScalarType dtype = ScalarType.Float32) : base(nameof(RmsNorm))
    {
        Eps = eps;
        _weight = new Parameter(torch.ones(size, dtype: dtype, device: device));
        RegisterComponents();
    }

    public double Eps { get; }

    public Parameter weight {
        get => _weight;
        set { _weight = value; ConditionallyRegisterParameter("weight", value); }
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // HF order matters in bf16: normalise in fp32, cast back to the input dtype, and only then scale.
        var h = x.to(ScalarType.Float32);
        h = h * torch.rsqrt(h.pow(2).mean(new long[] { -1 }, keepdim: true) + Eps);
        return (_weight * h.to(x.dtype)).MoveToOuterDisposeScope();
    }
}
