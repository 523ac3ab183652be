using System.Management.Automation;
using LoraPS.Models;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Deletes LoRA adapters from a model (PEFT delete_adapter).</summary>
/// <remarks>
/// <para>
/// Remove-LoraAdapter takes the adapter's layers and module copies out of the model; the base weights are untouched.
/// If the removed adapter was the only active one, the first remaining adapter becomes active. Files saved with
/// Save-LoraAdapter are not touched. Merged adapters cannot be removed: unmerge first with Merge-LoraAdapter -Unmerge.
/// </para>
/// </remarks>
/// <example>Remove one adapter
/// <code>Remove-LoraAdapter -Model $model -Name qv</code>
/// <para>The adapter qv is gone; Get-LoraAdapter no longer lists it.</para>
/// </example>
/// <example>Remove adapters chosen by wildcard
/// <code>Get-LoraAdapter -Model $model -Name 'trial*' | Remove-LoraAdapter</code>
/// <para>Records from Get-LoraAdapter carry their model and name, so they bind by property name.</para>
/// </example>
[Cmdlet(VerbsCommon.Remove, "LoraAdapter", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
public sealed class RemoveLoraAdapterCommand : AdapterCmdlet
{
    /// <summary>The model from Import-LoraModel.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNull]
    public LoraModel Model { get; set; } = null!;

    /// <summary>The adapters to remove.</summary>
    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = [];

    protected override void ProcessRecord()
    {
        foreach (var name in ResolveAdapterNames(Model, Name, terminating: false))
            if (ShouldProcess($"adapter '{name}' of {Model.Name}", "Remove the LoRA adapter"))
                RunEngine(_ => Model.Adapters.Delete(name), name);
    }
}
