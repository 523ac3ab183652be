using TorchSharp;
using TorchSharp.Utils;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>
/// A lookup table (<c>nn.Embedding</c> without the extras) whose weight can be created on the meta device.
/// </summary>
/// <remarks>
/// TorchSharp's <c>nn.Embedding</c> is a native module that always allocates and randomly initialises its weight on
/// the CPU first; for a 128k-token vocabulary that is gigabytes thrown away at load. This managed one allocates
/// nothing until the loader hands it the checkpoint tensor.
/// </remarks>
public sealed class EmbeddingTable : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")]
    private Parameter _weight;

    public EmbeddingTable(long count, long dim, Device? device = null, ScalarType dtype = ScalarType.Float32) : base(nameof(EmbeddingTable))
    {
        _weight = new Parameter(torch.empty(count, dim, dtype: dtype, device: device));
        if (_weight.device_type != DeviceType.META) {
            using var _ = torch.no_grad();
            nn.init.normal_(_weight);
        }
        RegisterComponents();
    }

    public Parameter weight {
        get => _weight;
        set { _weight = value; ConditionallyRegisterParameter("weight", value); }
    }

    public long NumEmbeddings => _weight.shape[0];
    public long EmbeddingDim => _weight.shape[1];

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var shape = ids.shape.Append(_weight.shape[1]).ToArray();
        return _weight.index_select(0, ids.reshape(-1)).reshape(shape).MoveToOuterDisposeScope();
    }
}
