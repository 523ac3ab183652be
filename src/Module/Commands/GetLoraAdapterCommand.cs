using System.Management.Automation;
using LoraPS.Models;
using LoraPS.Module.Adapters;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Lists a model's LoRA adapters with their settings, state and parameter counts.</summary>
/// <remarks>
/// <para>
/// Get-LoraAdapter returns one record per adapter, in the order they were added: rank, alpha, the number of wrapped
/// layers, whether it is active, merged into the weights or trainable, and PEFT-style trainable/total parameter counts
/// of the model. The full config is in the Config property.
/// </para>
/// <para>
/// -Name filters by name and accepts wildcards. A name without wildcards that the model does not have is an
/// AdapterNotFound error listing the names it has.
/// </para>
/// </remarks>
/// <example>All adapters of a model
/// <code>Get-LoraAdapter -Model $model</code>
/// <para>A table with one row per adapter.</para>
/// </example>
/// <example>The active adapter's full config
/// <code>(Get-LoraAdapter -Model $model | Where-Object IsActive).Config</code>
/// <para>Shows every setting that Save-LoraAdapter would write to adapter_config.json.</para>
/// </example>
[Cmdlet(VerbsCommon.Get, "LoraAdapter")]
[OutputType(typeof(LoraAdapterState))]
public sealed class GetLoraAdapterCommand : AdapterCmdlet
{
    /// <summary>The model from Import-LoraModel.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [ValidateNotNull]
    public LoraModel Model { get; set; } = null!;

    /// <summary>Adapter names to return; wildcards are allowed. Default: all.</summary>
    [Parameter(Position = 1)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = ["*"];

    protected override void ProcessRecord()
    {
        foreach (var name in ResolveAdapterNames(Model, Name, terminating: false))
            WriteObject(RunEngine(_ => LoraAdapterState.Of(Model, name), Model));
    }
}
