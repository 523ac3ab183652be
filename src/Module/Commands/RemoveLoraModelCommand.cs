using System.Management.Automation;
using LoraPS.Models;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Releases a model's weights (and its adapters) from memory.</summary>
/// <remarks>
/// <para>
/// Remove-LoraModel frees the memory a model from Import-LoraModel holds, without waiting for the session to end.
/// A removed model can no longer be used; import it again if you need it. Removing a model twice does nothing.
/// Nothing on disk is touched.
/// </para>
/// </remarks>
/// <example>Free a model
/// <code>Remove-LoraModel -Model $model</code>
/// <para>The weights are released immediately.</para>
/// </example>
/// <example>Free every model in a list
/// <code>$models | Remove-LoraModel</code>
/// <para>Models from the pipeline are released one by one.</para>
/// </example>
[Cmdlet(VerbsCommon.Remove, "LoraModel", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
public sealed class RemoveLoraModelCommand : LoraCmdlet
{
    /// <summary>The models to release.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [ValidateNotNull]
    public LoraModel[] Model { get; set; } = Array.Empty<LoraModel>();

    protected override void ProcessRecord()
    {
        foreach (var model in Model)
            if (!model.IsDisposed && ShouldProcess(model.ToString(), "Release the model's weights from memory"))
                model.Dispose();
    }
}
