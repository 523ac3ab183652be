using System.Management.Automation;
using LoraPS.Adapters;
using LoraPS.Models;
using LoraPS.Module.Adapters;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Combines adapters into a new weighted adapter (PEFT add_weighted_adapter).</summary>
/// <remarks>
/// <para>
/// Join-LoraAdapter adds -NewName = Σ weightᵢ · adapterᵢ, layer by layer. -Combination chooses how: Svd (default)
/// computes the exact weighted sum of the updates and truncates it to -SvdRank (default: the largest source rank);
/// Cat stacks the factors (exact, rank = the sum of the ranks); Linear mixes the A and B factors directly (needs equal
/// ranks and is not exact in the update, as in PEFT).
/// </para>
/// <para>
/// The new adapter has alpha = r and starts inactive; activate it with Set-LoraAdapter and save it like any other.
/// DoRA adapters cannot be combined.
/// </para>
/// </remarks>
/// <example>Blend two adapters
/// <code>Join-LoraAdapter -Model $model -Name style, facts -Weight 0.7, 0.3 -NewName blend -Combination Cat
/// Set-LoraAdapter -Model $model -Name blend</code>
/// <para>Creates the exact weighted sum of both updates and makes it the active adapter.</para>
/// </example>
/// <example>Compress an adapter
/// <code>Join-LoraAdapter -Model $model -Name default -Weight 1 -NewName small -Combination Svd -SvdRank 2</code>
/// <para>The best rank-2 approximation of the adapter's update.</para>
/// </example>
[Cmdlet(VerbsCommon.Join, "LoraAdapter")]
[OutputType(typeof(LoraAdapterState))]
public sealed class JoinLoraAdapterCommand : AdapterCmdlet
{
    /// <summary>The model from Import-LoraModel.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNull]
    public LoraModel Model { get; set; } = null!;

    /// <summary>The adapters to combine.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = [];

    /// <summary>One weight per adapter in -Name.</summary>
    [Parameter(Mandatory = true, Position = 2)]
    [ValidateNotNullOrEmpty]
    public double[] Weight { get; set; } = [];

    /// <summary>The name of the new adapter.</summary>
    [Parameter(Mandatory = true)]
    [ValidateNotNullOrEmpty]
    public string NewName { get; set; } = "";

    /// <summary>How factors are combined: Svd (default), Cat or Linear.</summary>
    [Parameter]
    public AdapterCombinationType Combination { get; set; } = AdapterCombinationType.Svd;

    /// <summary>Rank of the Svd combination. Default: the largest source rank.</summary>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int SvdRank { get; set; }

    protected override void EndProcessing()
    {
        var names = ResolveAdapterNames(Model, Name);
        if (names.Count != Weight.Length)
            ThrowTerminating(ErrorIds.InvalidArgument, ErrorCategory.InvalidArgument,
                $"-Name selects {names.Count} adapters ({string.Join(", ", names)}) but -Weight has {Weight.Length} values; give one weight per adapter.", Weight);
        int? svdRank = MyInvocation.BoundParameters.ContainsKey(nameof(SvdRank)) ? SvdRank : null;
        RunEngine(_ => Model.Adapters.AddWeighted(names, Weight, NewName, Combination, svdRank), NewName);
        WriteObject(RunEngine(_ => LoraAdapterState.Of(Model, NewName), Model));
    }
}
